"""The embeddable widget: an npm package (`package.json`) whose files the reader serves, with
`build.py`, which writes its ES module and classic script from `src/`."""
