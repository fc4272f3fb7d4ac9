"""The last stage: papermill-run notebooks exported to offline HTML, and their parts."""
