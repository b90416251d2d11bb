@oq
Feature: Training: assignments from approvals and job functions, supersession, qualification, records
  Training is always on an exact revision, created in the same transaction as the event that requires it, and
  qualification is answered from the history.

  Background:
    Given the quality organisation with an author, two reviewers, two QA approvers and an operator
    And document "SOP-QA-001" whose training audience is "OP-MIX"

  @URS-035 @URS-017
  Scenario: The final approval assigns the exact revision to every holder of the audience job function
    Given 25 operators hold the job function "OP-MIX"
    And revision 1.0 of the document is reviewed and waits for the approval of "quinn.qa"
    When "quinn.qa" approves revision 1.0 effective in 10 days
    Then 25 open assignments on revision 1.0 exist, each due on its effective date with the source "revision approved"
    And each assignment has its version row in the audit transaction of the approval
    And the audit trail integrity check passes

  @URS-035 @URS-028
  Scenario: When the assignments cannot be written, the approval is not recorded either
    Given 3 operators hold the job function "OP-MIX"
    And revision 1.0 of the document is reviewed and waits for the approval of "quinn.qa"
    And writing training assignments fails with "disk full"
    When "quinn.qa" approves revision 1.0 effective in 10 days
    Then the approval fails with "disk full"
    And revision 1.0 is "In review" with no "Approved" signature and no training assignment
    When writing training assignments works again and "quinn.qa" approves revision 1.0 effective in 10 days
    Then 3 open assignments on revision 1.0 exist, each due on its effective date with the source "revision approved"

  @URS-036
  Scenario: A superseding revision closes open training on the old revision and keeps completed training
    Given 2 operators hold the job function "OP-MIX"
    And revision 1.0 of the document is effective
    And operator 1 has completed the training on revision 1.0
    When revision 2.0 is approved and becomes effective today
    Then the training of operator 1 on revision 1.0 is still completed
    And the training of operator 2 on revision 1.0 is superseded with the reason "Superseded by revision 2.0"
    And both operators have open training on revision 2.0

  @URS-037
  Scenario: Job functions and deactivation assign and cancel training
    Given revision 1.0 of the document is effective
    And a training coordinator account "cora.coord"
    When "cora.coord" grants "otto.operator" the job function "OP-MIX"
    Then "otto.operator" has open training on revision 1.0 with the source "job function granted"
    When "cora.coord" ends the job function "OP-MIX" of "otto.operator"
    Then that training is cancelled with a reason naming "Job function OP-MIX ended"
    When "cora.coord" grants "otto.operator" the job function "OP-MIX" again
    And "otto.operator" is deactivated
    Then his open training is cancelled with the reason "Account deactivated" and his history is kept

  @URS-038 @URS-055
  Scenario: Qualification at a point in time is answered from the history and never changes afterwards
    Given the operator holds the job function "OP-MIX"
    And revision 1.0 of the document is effective
    And "otto.operator" completes the training on revision 1.0 one hour later
    And "sam.supervisor" has a personal API token
    When revision 2.0 is approved and becomes effective 7 days later
    Then the API answers that "otto.operator" is not qualified now: "Trained on revision 1.0, not on revision 2.0."
    And the API answers that "otto.operator" was qualified on revision 1.0 two hours after revision 1.0 took effect
    When "otto.operator" completes the training on revision 2.0
    Then the API answers that "otto.operator" is qualified now on revision 2.0
    And the API still answers that "otto.operator" was qualified on revision 1.0 two hours after revision 1.0 took effect
    And every API request is recorded in the audit trail under "sam.supervisor"
    And a token sent in the address is refused with "token_in_url"

  @URS-039 @URS-021
  Scenario: The training record lists each completion with its signature and prints as an audited PDF
    Given the operator holds the job function "OP-MIX"
    And revision 1.0 of the document is effective
    And "otto.operator" completes the training on revision 1.0 one hour later
    And "quinn.qa" is logged in
    When "quinn.qa" prints the training record of "otto.operator"
    Then the PDF shows "SOP-QA-001 revision 1.0" and the signature "Otto Operator — Read and understood" with its UTC time and SHA-256
    And the print is recorded as "training_record.printed" about "otto.operator" by "quinn.qa"
