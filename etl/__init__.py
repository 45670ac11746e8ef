"""Extract -> validate -> transform -> load for export bundles (docs/input-contract.md)."""
