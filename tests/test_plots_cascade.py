"""The cascade figure (empir_lib.book.plots.cascade): one distinct colour per stage."""
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from empir_lib.book import plots
from empir_lib.book.plots import cascade


def test_every_stage_gets_its_own_colour():
    stages = ["clean", "apgd-ce", "member-0", "member-1", "member-2", "transfer-fp", "square", "robust"]
    colours = cascade.stage_colours(stages)
    assert colours["clean"] == cascade.STAGE_COLOURS["clean"] and colours["robust"] == "tab:green"
    assert len({to_rgba(c) for c in colours.values()}) == len(stages)


def test_cascade_bars_draws_every_stage_that_broke_something():
    rows = {"a": {"clean": 2, "apgd-ce": 3, "member-0": 1, "robust": 4},
            "b": {"clean": 5, "member-1": 1, "robust": 4}}
    fig = plots.cascade_bars(rows, title="t")
    assert isinstance(fig, Figure)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["clean", "apgd-ce", "member-0", "member-1", "robust"]


def test_settling_lines_draw_each_row_and_say_which_still_move():
    curves = {"a": {"steps": ["suite", "stages", "r1"], "share": [100.0, 80.0, 80.0], "robust": [10, 8, 8],
                    "converged": True},
              "b": {"steps": ["suite", "r1", "r2"], "share": [100.0, 90.0, 70.0], "robust": [20, 18, 14],
                    "converged": False}}
    fig = plots.settling_lines(curves)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines()]
    assert [ln.get_linestyle() for ln in lines] == ["-", "--"]
    # Row b skips the new stages: its points sit at the suite, 2x and 4x.
    assert list(lines[1].get_xdata()) == [0, 2, 3] and list(lines[1].get_ydata()) == [100.0, 90.0, 70.0]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a: 10 -> 8", "b: 20 -> 14 (still moving)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["suite", "+ new\nstages", "2x", "4x"]
    # Late stages, after a converged round, come last; every round up to the last one run has a tick.
    curves["c"] = {"steps": ["suite", "stages", "r1", "r3", "late"], "share": [100.0, 90.0, 90.0, 80.0, 80.0],
                   "robust": [10, 9, 9, 8, 8], "converged": True}
    ax = plots.settling_lines(curves).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()][-3:] == ["4x", "8x", "+ late\nstages"]
    # The rounds as a line, then a dotted jump to the late point (a square): no line through 16x.
    main, jump, point = ax.get_lines()[2:]
    assert list(main.get_xdata()) == [0, 1, 2, 4] and main.get_linestyle() == "-"
    assert list(jump.get_xdata()) == [4, 5] and jump.get_linestyle() == ":"
    assert list(point.get_xdata()) == [5] and point.get_marker() == "s"
    # A dozen rows: the colour cycle wraps after ten, so the marker changes and no two rows look alike.
    many = {f"row{i}": curves["a"] for i in range(12)}
    rows = [ln for ln in plots.settling_lines(many).axes[0].get_lines()]
    looks = [(ln.get_color(), ln.get_marker()) for ln in rows]
    assert len(set(looks)) == 12 and looks[10][0] == looks[0][0] and looks[10][1] != looks[0][1]
