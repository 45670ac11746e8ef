"""Extract -> validate -> transform -> load for export bundles (shared/spec/export-format.md)."""
