"""Open clinical registry for multiple myeloma patients after autologous stem-cell transplant."""

__version__ = "0.1.0"
