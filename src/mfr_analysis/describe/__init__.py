"""Descriptive tables of a derived session table (issue 13): one module per table, each a
tidy DataFrame, with the cells its client counts give the disclosure plan."""
