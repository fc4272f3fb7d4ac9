"""The report notebooks, installed with the package as ``mfr_analysis.report_notebooks``.

This folder is their one copy: ``pyproject.toml`` maps the package to it, so an editable
install runs these very files and a wheel carries them. Open and adapt them here; to run an
adapted copy kept elsewhere, set ``MFR_NOTEBOOK_DIR`` to its folder.
"""
