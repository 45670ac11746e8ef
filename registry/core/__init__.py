"""The bottom layer: errors and their exit codes, configuration, units. Imports nothing else
of the registry."""
