"""The dashboards' shared library, free of any stackmon metric name.

- ``promql``: a panel query (``Q``), the job/instance scope every selector gets, and
  rate / increase / ratio / quantile builders;
- ``panels``: panel kinds (``ts``, ``st``, ``bar``, ``gg``, ``tbl``, ``up``), threshold
  steps, data links, and the SDK builder of a panel;
- ``dashboard``: a dashboard (``Dash``, ``Var``), its variables, annotation and tab links,
  and its rendering to stable JSON.
"""
