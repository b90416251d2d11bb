@canary
Feature: Runner canaries (tool adequacy)
  Deliberately failing scenarios, kept apart from the IQ/OQ/PQ protocols. An executed canary run must report each
  failing scenario as failed and the control scenario as passed: evidence that the protocol runner does not report a
  failure as a pass (EU GMP Annex 11, 4.7).

  Scenario: Control: a correct expected value passes
    Given the number 2
    When it is doubled
    Then the result is 4

  Scenario: Canary: a wrong expected value is reported as failed
    Given the number 2
    When it is doubled
    Then the result is 5

  Scenario: Canary: an undefined step is reported as failed
    Given the number 2
    When a step that has no definition runs
    Then the result is 4

  Scenario: Canary: an unexpected exception is reported as failed
    Given the number 2
    When the step raises an unexpected error
    Then the result is 4
