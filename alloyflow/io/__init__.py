"""The output folder: its layout (``layout``), one atomic writer (``files``), and the readers and writers
of each kind of result (``hull``, ``barriers``, ``thermo``, ``report``)."""
