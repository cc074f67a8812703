"""The run report: one self-contained HTML page per run, and the numbers behind it.

`read.read_run` turns a run's artifacts into a typed `model.RunReport`; `page.render_page`
renders it as HTML with charts from `plots`; `terminal.render_status` as tables for
`distillrun status`; `build.build_report` writes the page into the run's store. Reading never
needs matplotlib: only drawing the page does.
"""
