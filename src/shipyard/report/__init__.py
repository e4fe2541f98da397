"""The release report: a model built from the record, and its HTML, Markdown and text renderings."""
