"""The owner's memory: the part files and their format (store, parsing), the replay that
turns them into indexes (replay, insight), search over those indexes (lexical, dense,
search), and when to update them (watch, scheduler). The files are the source of truth."""
