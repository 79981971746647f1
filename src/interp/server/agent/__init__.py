"""The agent loop both doors of ``interp serve`` run: the model client (``model``), a
conversation's transcript fitted to the model's window (``context``), a model turn and the
run's budget (``turn``), the loop, its sink protocol and the registry of runs (``loop``),
and the events a run streams (``events``)."""
