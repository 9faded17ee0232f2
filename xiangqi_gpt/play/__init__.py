"""Playing: players, search and levels, matches, arena, self-play, Fairy-Stockfish, the UCI/UCCI engine, the terminal game."""
