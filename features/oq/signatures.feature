@oq
Feature: Electronic signatures: ceremony, manifestation, binding, manifests and controlled copies
  A signature needs the password and code each time, shows the printed name, UTC time and meaning, is bound to the
  signed content and can be exported and checked.

  Background:
    Given the quality organisation with an author, two reviewers, two QA approvers and an operator
    And document "SOP-QA-001" whose training audience is "OP-MIX"

  @URS-020 @URS-021 @URS-005
  Scenario: A QA approver signs through the signing page and the signature shows its manifestation
    Given revision 1.0 of the document is reviewed and waits for the approval of "quinn.qa"
    And "quinn.qa" is logged in
    When "quinn.qa" opens the approval signing page of revision 1.0
    Then the page shows the document number, the revision, the content SHA-256, the meaning "Approved" and the legal statement
    When "quinn.qa" signs it with the password and the current authentication code
    Then the revision is "Approved (pending effective)"
    And the revision page shows the signature of "Quinn QA" with meaning "Approved", its UTC time and the status "Valid"
    And the stored signature holds the signer, printed name, UTC time, meaning, revision and content SHA-256, authenticated by "password+totp"

  @URS-020 @URS-004 @URS-028
  Scenario: A wrong password at signing signs nothing and counts toward lockout
    Given revision 1.0 of the document is reviewed and waits for the approval of "quinn.qa"
    And "quinn.qa" is logged in
    When "quinn.qa" signs the approval of revision 1.0 with a wrong password
    Then the signature is refused and revision 1.0 is still "In review" with no "Approved" signature
    And the failed attempt is recorded as a "signature.failure" security event and counts toward lockout

  @URS-023
  Scenario: Only the person who authenticated signs, once per authentication and once per meaning
    Given revision 1.0 of the document is in review
    When "sam.supervisor" authenticates and his proof is used to sign as "quinn.qa"
    Then the signature is refused with "A signature can only be applied by the person who authenticated."
    When "sam.supervisor" signs "Reviewed" and the same authentication is used for a second signature
    Then the signature is refused with "Each signature needs your password again."
    When "sam.supervisor" authenticates again and signs "Reviewed" a second time
    Then the signature is refused with "You have already signed"
    And "sam.supervisor" has exactly one "Reviewed" signature on revision 1.0

  @URS-022 @URS-016
  Scenario: Content changed after signing invalidates the signatures and is detected
    Given revision 1.0 of the document is effective
    And "otto.operator" is logged in
    When the content of revision 1.0 is changed directly in the database, bypassing the application
    Then the revision page shows all 3 signatures as "Invalid: record altered after signing"
    And the integrity check fails naming the revision record

  @URS-025 @URS-015
  Scenario: Signature records cannot be changed or deleted
    Given revision 1.0 of the document is effective
    When the application changes the printed name of a signature through the application
    Then the change is refused because signatures cannot be changed once recorded
    When the application's database account tries to update and delete a signature row
    Then the database refuses both statements and the signature is unchanged

  @URS-024 @URS-021
  Scenario: The signature manifest conforms to the XSD and any difference is named
    Given revision 1.0 of the document is effective
    And "otto.operator" is logged in
    When "otto.operator" downloads the signature manifest of revision 1.0
    Then the manifest conforms to the shipped XSD and lists 3 signatures with printed name, meaning and UTC time
    And checking the manifest against the database finds no difference
    When the printed name of the approval signature is edited in the manifest
    Then checking the edited manifest names the signature and the field "printed name"
    When a manifest declaring an external entity is checked
    Then it is refused without reading the entity

  @URS-026 @URS-021
  Scenario: A controlled copy shows the revision, who printed it and every signature, and the print is recorded
    Given revision 1.0 of the document is effective
    And "otto.operator" is logged in
    When "otto.operator" prints the controlled copy of revision 1.0
    Then every page of the PDF shows "SOP-QA-001", the revision, its status, "printed by Otto Operator" and the content SHA-256
    And the PDF lists the signatures of "Ada Author", "Sam Supervisor" and "Quinn QA" with their meanings and UTC times
    And the print is recorded in the audit trail under "otto.operator"
