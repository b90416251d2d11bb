"""Document control: controlled documents, revisions, their lifecycle, routing and release."""
