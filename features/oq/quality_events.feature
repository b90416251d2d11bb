@oq
Feature: Quality events: deviations, CAPA and change control
  Quality events are numbered without gaps, follow signed lifecycles with segregation of duties, and close only
  once the training they require is complete.

  Background:
    Given the quality organisation with an author, two reviewers, two QA approvers and an operator
    And document "SOP-QA-001" whose training audience is "OP-MIX"
    And the operator holds the job function "OP-MIX"
    And revision 1.0 of the document is effective

  @URS-044 @URS-043 @URS-009
  Scenario: A deviation is investigated, submitted by its owner and closed by QA with signatures
    When "sam.supervisor" reports the deviation "Mixer cleaned with the wrong detergent"
    Then it is numbered "DEV-<year>-0001" and is "Open"
    When "sam.supervisor" starts the investigation and submits the deviation
    Then the submission is refused until "classification, root cause, root cause category" are recorded
    When "sam.supervisor" classifies it "major", records the root cause and submits it with his signature
    Then the deviation is "Pending QA approval"
    When "sam.supervisor" tries to approve the closure of his own deviation
    Then it is refused naming the permission "quality.approve" and the deviation is "Pending QA approval"
    When "quinn.qa" approves the closure with her signature
    Then the deviation is "Closed" with the signatures "Authored" by "Sam Supervisor" and "Approved" by "Quinn QA"

  @URS-043
  Scenario: A refused save gives its number back, so numbers have no gaps
    When "sam.supervisor" reports a deviation that occurred after it was discovered
    Then the report is refused naming the field "discovered_at" and nothing is saved
    When "sam.supervisor" reports the deviation "Mixer cleaned with the wrong detergent"
    Then it is numbered "DEV-<year>-0001" and is "Open"

  @URS-045
  Scenario: The training adequacy of a deviation is what the history says about the moment it occurred
    Given revision 2.0 of the document became effective and "otto.operator" signed it four hours after the deviation occurred
    When "sam.supervisor" reports the deviation with "otto.operator" involved and "SOP-QA-001" concerned
    Then the adequacy panel shows "otto.operator" not trained on revision 2.0 then, trained on revision 1.0 only
    And the panel shows "otto.operator" qualified on revision 2.0 today

  @URS-046 @URS-047
  Scenario: CAPA retraining is assigned at QA's approval and the CAPA closes only when it is complete
    Given "otto.operator" completes the training on revision 1.0 one hour later
    And a CAPA owned by "sam.supervisor" with a retraining action on "SOP-QA-001" for "otto.operator"
    When "quinn.qa" approves the CAPA plan and the retraining action with her signatures
    Then "otto.operator" has an open assignment on revision 1.0 with the source "CAPA retraining action" naming the CAPA
    When "sam.supervisor" records the retraining action as done
    Then it is refused naming "Otto Operator (otto.operator) on SOP-QA-001 rev 1.0"
    When "otto.operator" completes the CAPA retraining
    And "sam.supervisor" records the action as done, starts the effectiveness check and signs it effective
    And "quinn.qa" closes the CAPA with her signature
    Then the CAPA is "Closed" with the signatures "Approved", "Approved", "Verified", "Approved"

  @URS-046 @URS-028
  Scenario: When the retraining assignments cannot be written, nothing of the approval is recorded
    Given "otto.operator" completes the training on revision 1.0 one hour later
    And a CAPA owned by "sam.supervisor" with a retraining action on "SOP-QA-001" for "otto.operator"
    And "quinn.qa" has approved the CAPA plan
    And writing training assignments fails with "database went away"
    When "quinn.qa" approves the retraining action with her signature
    Then the approval fails with "database went away"
    And the retraining action is still planned, with no new signature and no CAPA assignment

  @URS-048
  Scenario: A change control closes only when its revisions are effective and their training is complete
    Given a change control owner "carl.change" who also authors documents
    And an approved change control on "SOP-QA-001" owned by "carl.change"
    When "carl.change" starts the implementation and the new revision 2.0 is approved, effective today
    And "carl.change" moves the change to verification
    Then "quinn.qa" cannot close it while revision 2.0 is not yet effective
    When the daily release runs
    Then "quinn.qa" cannot close it while "Otto Operator (otto.operator)" has open training on revision 2.0
    When "quinn.qa" closes it with open training, justifying "Otto is on leave"
    Then the change control is "Closed" and its closure note names "Otto Operator (otto.operator)"
    And the closure is signed "Approved with open training" by "Quinn QA"
