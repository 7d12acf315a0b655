"""Result tables (Markdown, CSV) that say how every number was computed."""
