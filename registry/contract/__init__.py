"""The export contract's declarative facts that every layer reads: which input files a bundle
holds, in load order, with their source id, pseudonym namespace, target table, columns (the
column catalogue) and whether a bundle may leave them out (``files``); what a column is
(``columns``); and every rule a row can fail, with the files it applies to (``rules``). Low in
the tree (it imports nothing of the project but ``core``), so validation, the models, data
quality, derivation and the docs read one catalogue instead of keeping their own."""

from registry.contract.files import (
    CHILD_FILES,
    FILE_NAMES,
    INPUT_FILES,
    OPTIONAL_FILES,
    ROOT,
    InputFile,
    input_file,
)

__all__ = ["CHILD_FILES", "FILE_NAMES", "INPUT_FILES", "OPTIONAL_FILES", "ROOT", "InputFile", "input_file"]
