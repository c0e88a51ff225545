package rules

// What the external tests (package rules_test, which runs the whole
// analysis over the lab's scenarios) use from inside.

// CheckIncident asserts the parts of an incident every rule must fill.
var CheckIncident = checkIncident
