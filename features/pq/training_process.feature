@pq
Feature: Performance qualification: a procedure change reaches 1,000 operators
  The business process end to end at realistic volume. A revised SOP is approved and assigned to every operator,
  each of them reads and signs it, and it is released; a deviation is investigated and the CAPA raised from it
  retrains the operators involved before it is closed. Each stage records how long it took (duration_s).

  @URS-035 @URS-017 @URS-040 @URS-031 @URS-038 @URS-044 @URS-046 @URS-047 @URS-016
  Scenario: A new SOP is trained to 1,000 operators and released, and a deviation's CAPA retraining is closed
    Given the quality organisation with an author, two reviewers, two QA approvers and an operator
    And 1000 operators with an enrolled authenticator hold the job function "OP-MIX"
    And document "SOP-QA-001" whose training audience is "OP-MIX"
    And revision 1.0 of the document is reviewed and waits for the approval of "quinn.qa"
    When "quinn.qa" approves revision 1.0, effective in 7 days
    Then 1000 open assignments on revision 1.0 were created in the approval's transaction
    When every operator opens revision 1.0 and signs it "Read and understood" with password and code
    Then all 1000 assignments are completed, each by a valid signature of its own operator
    When the daily release runs on the effective date
    Then revision 1.0 is effective and all 1000 operators are qualified on it
    When "sam.supervisor" reports a deviation involving 20 of the operators, investigates it and QA approves its closure
    And "sam.supervisor" raises a CAPA from the deviation retraining those 20 operators, and QA approves the plan and the retraining
    And the 20 operators complete the retraining and "sam.supervisor" verifies the CAPA effective
    Then "quinn.qa" closes the CAPA
    And the audit trail integrity check passes over the whole process
