"""The jobs: what runs the ETL and the reports together — the scheduled night (load every
bundle of the inbox, derive, check data quality, write the reports, summarise the night) and
the demo (a synthetic bundle through the whole pipeline). Above both the ETL (``etl``: extract,
validate, transform, load) and the reports (``registry.reports``), which never import each
other."""
