"""The database layer: models, engines and the writer lock, the migrations runner, bulk copy
and the reference data (the drug vocabulary). Imports only ``registry.core``."""
