"""The scenario: its schema (pydantic), loading from YAML, and the translation of errors into one-line messages."""
