@oq
Feature: Read and sign
  A trainee opens the exact revision assigned to them and signs it "Read and understood"; nobody else can.

  Background:
    Given the quality organisation with an author, two reviewers, two QA approvers and an operator
    And document "SOP-QA-001" whose training audience is "OP-MIX"
    And the operator holds the job function "OP-MIX"
    And revision 1.0 of the document is approved, effective in 7 days

  @URS-040 @URS-021 @URS-005
  Scenario: The operator opens and signs the exact revision assigned and sees it in the history
    Given "otto.operator" is logged in
    When "otto.operator" opens "My training"
    Then the list shows "SOP-QA-001 revision 1.0" as open training
    When "otto.operator" opens the assignment
    Then the page shows the content of revision 1.0 and the opening time is recorded
    When "otto.operator" signs it "Read and understood" with the password and the current authentication code
    Then the assignment is completed by a "Read and understood" signature of "Otto Operator" bound to revision 1.0
    And the history on "My training" shows the completion with the printed name, meaning and UTC time

  @URS-041
  Scenario: Training cannot be signed before opening it, nor by anyone else
    Given "otto.operator" is logged in
    And an operator account "olga.other"
    And "olga.other" is logged in
    When "otto.operator" signs the assignment without having opened it
    Then the signature is refused with "Open the document first" and the assignment stays open
    When "olga.other" opens and signs the assignment of "otto.operator"
    Then both requests answer 404 and the assignment stays open and unopened

  @URS-042
  Scenario: A release "when trained" waits for everyone, unless QA signs an override naming who is not trained
    Given 2 operators hold the job function "OP-MIX"
    And document "SOP-QA-002" is released "when trained" with revision 1.0 approved effective today
    When the daily release runs for "SOP-QA-002"
    Then revision 1.0 of "SOP-QA-002" is held
    When operator 1 completes the training on revision 1.0 of "SOP-QA-002"
    And "quincy.qa" releases revision 1.0 of "SOP-QA-002" with open training, justifying "Operator 2 on leave"
    Then revision 1.0 of "SOP-QA-002" is effective and the override note names operator 2 and not operator 1
    And the override is signed "Approved with open training" by "Quincy QA"
