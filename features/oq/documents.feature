@oq
Feature: Document control: revision lifecycle, routing, frozen content, effective dates, obsolescence
  A controlled document changes only through signed revisions that follow the approved sequence; one revision is in
  force at a time.

  Background:
    Given the quality organisation with an author, two reviewers, two QA approvers and an operator
    And document "SOP-QA-001" whose training audience is "OP-MIX"

  @URS-030 @URS-031 @URS-033
  Scenario: A revision goes from draft to effective, after every review, and supersedes its predecessor
    Given revision 1.0 of the document is effective
    When the author writes revision 2.0, routes it to "sam.supervisor" for review and "quinn.qa" for approval and submits it
    Then revision 2.0 is "In review" with the signature "Authored" of "Ada Author"
    When "quinn.qa" tries to approve revision 2.0
    Then it is refused with "outstanding: Sam Supervisor" and revision 2.0 is still "In review"
    When "sam.supervisor" reviews revision 2.0
    And "quinn.qa" approves revision 2.0 effective today
    Then revision 2.0 is "Approved (pending effective)"
    When the daily release runs
    Then revision 2.0 is "Effective" and revision 1.0 is "Superseded"
    And exactly one revision of "SOP-QA-001" is effective

  @URS-030 @URS-009
  Scenario: Steps out of sequence and self-approval are refused
    Given revision 1.0 of the document is a draft
    When "quinn.qa" tries to approve the draft revision 1.0
    Then it is refused with "only a revision in In review can be" and revision 1.0 is still "Draft"
    When the author routes revision 1.0 to himself for approval
    Then it is refused with "Segregation of duties" and revision 1.0 has no routing

  @URS-031 @URS-028
  Scenario: The effective date can never be before the approval and a refused approval signs nothing
    Given revision 1.0 of the document is reviewed and waits for the approval of "quinn.qa"
    When "quinn.qa" approves revision 1.0 effective yesterday
    Then it is refused with "cannot be before the approval date" and revision 1.0 is still "In review"
    And revision 1.0 carries no "Approved" signature and no training was assigned

  @URS-032
  Scenario: The content is frozen once the revision is submitted
    Given revision 1.0 of the document is in review
    When the author edits the content of revision 1.0
    Then it is refused with "In review" and the content of revision 1.0 is unchanged
    When the content of revision 1.0 is changed through the application without a reason for change
    Then it is refused with "A reason for change is required" and the content of revision 1.0 is unchanged
    And revision 1.0 records the SHA-256 of its content

  @URS-033
  Scenario: A rejection returns the revision to draft and the resubmission needs every signature again
    Given revision 1.0 of the document is in review
    When "sam.supervisor" rejects revision 1.0 with the comment "Name the detergent"
    Then revision 1.0 is "Draft" and the rejection carries the comment "Name the detergent"
    When the author resubmits revision 1.0
    Then "quinn.qa" cannot approve revision 1.0 until "sam.supervisor" has reviewed it again

  @URS-029
  Scenario: Signing from a page that shows an older version of the revision is refused
    Given revision 1.0 of the document is a draft
    And the author has the edit page of revision 1.0 open
    When the revision is changed by another save
    And the author submits revision 1.0 from the page he had open
    Then it is refused with "changed since the page was loaded" and revision 1.0 is still "Draft"

  @URS-034 @URS-014
  Scenario: QA makes an effective revision obsolete only with a signed reason
    Given the operator holds the job function "OP-MIX"
    And revision 1.0 of the document is effective
    And revision 2.0 of the document is approved with training assigned to "otto.operator"
    When the daily release runs
    And "quincy.qa" makes revision 2.0 obsolete without a reason
    Then it is refused with "reason" and revision 2.0 is still "Effective"
    When "quincy.qa" makes revision 2.0 obsolete with the reason "Mixer decommissioned"
    Then revision 2.0 is "Obsolete" with a "Made obsolete" signature carrying "Mixer decommissioned"
    And the open training of "otto.operator" on the document is cancelled naming the reason
    And revision 2.0 is still readable with its history
