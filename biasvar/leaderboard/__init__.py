"""The leaderboard (issue 25, item 3): a fixed suite of snapshots, every built-in estimator measured
on it (``results/leaderboard.{json,md}``), and a row for any estimator spec beside those.

* :mod:`~biasvar.leaderboard.suite` — the suite (a JSON definition: models, training, sizes,
  hashes) and making its snapshots bit for bit;
* :mod:`~biasvar.leaderboard.board` — measuring the board, and a new row against the committed
  statistics stores (contrasts against ZGR and RF(4) without rerunning them);
* :mod:`~biasvar.leaderboard.render` — the board as an 80-column table and as Markdown.
"""

from biasvar.leaderboard.board import BOARD_FILE, load_board, measure_board, measure_row
from biasvar.leaderboard.render import markdown, text_table
from biasvar.leaderboard.suite import SUITE_FILE, Suite, SuiteError, load_suite, make_snapshots

__all__ = ["BOARD_FILE", "SUITE_FILE", "Suite", "SuiteError", "load_board", "load_suite", "make_snapshots",
           "markdown", "measure_board", "measure_row", "text_table"]
