"""The Textual app. The only package that imports Textual; it calls the same core API as the CLI."""
