"""Scheduling arithmetic: off-peak windows and prices, memory and duration models, the recommender, the
capacity planner's rules and the simulator that replays them. May import: core, spec."""
