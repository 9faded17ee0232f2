"""The rules: the board (move generation, check, game end) and move notation. No torch."""
