@oq
Feature: Login sessions and cross-site request protection
  A session ends after inactivity and at logout, a copied cookie stops working, and every change needs the
  session's own anti-forgery token.

  Background:
    Given an auditor account "alex.auditor"
    And "alex.auditor" is logged in

  @URS-006
  Scenario: A session ends after the configured idle time and the person is told why
    When "alex.auditor" is inactive for one minute longer than the configured idle timeout
    And "alex.auditor" opens the home page
    Then he is sent to the login page with a message naming the inactivity
    And the session expiry is recorded as a security event

  @URS-006
  Scenario: A session ends after the configured maximum length even while active
    When "alex.auditor" keeps working until just past the configured maximum session length
    Then he is sent to the login page with a message naming the maximum length

  @URS-007
  Scenario: A copy of the session cookie stops working at logout
    Given a copy of the session cookie of "alex.auditor"
    And the copied cookie opens the home page
    When "alex.auditor" logs out
    Then the copied cookie no longer opens the home page

  @URS-011
  Scenario: A change without the session's anti-forgery token is refused and changes nothing
    Given a system administrator account "admin.one"
    And "admin.one" is logged in
    When "admin.one" posts a deactivation of "alex.auditor" without an anti-forgery token
    And "admin.one" posts a deactivation of "alex.auditor" with the token of another session
    Then both requests are refused as not sent from Attest
    And "alex.auditor" is still active and no deactivation is recorded
