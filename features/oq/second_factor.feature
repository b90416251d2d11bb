@oq
Feature: Second factor (TOTP) for people who sign
  Everyone holding a signing permission proves a second factor after the password; a code works once only.

  @URS-005 @URS-003
  Scenario: A signer needs a valid code after the password and a code cannot be replayed
    Given a QA approver account "quinn.qa" with an enrolled authenticator
    When "quinn.qa" enters the correct password
    Then "quinn.qa" is asked for the authentication code and is not logged in yet
    When "quinn.qa" enters a wrong code
    Then the code is refused and the failure is recorded as a security event
    When "quinn.qa" enters the current code from the authenticator
    Then "quinn.qa" is logged in
    When the same code is used again for a second login of "quinn.qa"
    Then the replayed code is refused and recorded as a security event

  @URS-005 @URS-009
  Scenario: A signer without an authenticator must enrol one before doing anything else
    Given a QA approver account "nora.qa" without an authenticator
    When "nora.qa" logs in with the correct password
    Then "nora.qa" is sent to set up an authenticator before anything else
