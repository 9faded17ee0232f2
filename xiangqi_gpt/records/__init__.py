"""Game records: PGN and the archive formats (XQF, CBF/CBR/CBL, DhtmlXQ). No torch."""
