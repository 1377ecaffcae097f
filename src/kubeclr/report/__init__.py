"""The run report: metrics.json, the Markdown summary and the self-contained HTML page."""
