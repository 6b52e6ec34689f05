"""The page that ``sidrec serve`` shows at ``/``: a look at a trained run in the browser.

``explore.py`` computes what the page shows from the catalog (search, the SID tree around an item,
text neighbours, users of a split, codebook statistics, a 2-D map of the embeddings) with numpy and
no web framework; ``routes.py`` puts it behind read-only HTTP routes of the same service and serves
the page itself (``static/``: plain HTML, CSS and JavaScript, nothing fetched from elsewhere).

Imports no training code.
"""
