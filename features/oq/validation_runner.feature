@oq
Feature: Protocol runner
  The runner that executes these protocols inside the installed system reports what each step did: a failure is
  never reported as a pass, and every step keeps its expected result, actual result, evidence and times.

  @URS-052
  Scenario: The runner reports the deliberately failing canaries as failed and the control scenario as passed
    Given a validation engineer "vera.val" and a QA approver "quinn.qa" at site "BSL"
    And "quinn.qa" has approved the canary protocol
    When "vera.val" executes the canary protocol
    Then the run reports 4 scenarios and 12 steps: 7 passed, 3 failed and 2 not run
    And the control scenario passed with its expected and actual result "the result is 4" and its start and end times
    And the wrong value, the undefined step and the exception are each reported as failed with their error
    And each failed step raised its own test incident naming the run, the step and the expected result

  @URS-052
  Scenario: A protocol file changed after its approval cannot be executed
    Given a validation engineer "vera.val" and a QA approver "quinn.qa" at site "BSL"
    And "quinn.qa" has approved the canary protocol
    When the canary protocol file is changed after its approval
    Then "vera.val" cannot start a run of the canary protocol, and the refusal names the changed file
    And no run was recorded

  @URS-052
  Scenario: Step code changed after its approval cannot be executed
    Given a validation engineer "vera.val" and a QA approver "quinn.qa" at site "BSL"
    And "quinn.qa" has approved the canary protocol
    When a step definition of the canary protocol is changed after its approval
    Then "vera.val" cannot start a run of the canary protocol, and the refusal names the step code and the changed file
    And no run was recorded
