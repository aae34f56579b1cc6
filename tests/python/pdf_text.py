"""Prints a PDF's pages as JSON (a list of each page's text), read with pypdf: an
independent reader for the letters that `kith letters export` writes.

    python3 tests/python/pdf_text.py FILE.pdf
"""

import json
import sys

from pypdf import PdfReader

reader = PdfReader(sys.argv[1], strict=True)
print(json.dumps([page.extract_text() for page in reader.pages]))
