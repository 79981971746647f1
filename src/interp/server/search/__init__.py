"""File Search: a file's text, cut into chunks, kept and ranked for the ``file_search`` tool."""
