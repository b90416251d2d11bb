@oq
Feature: Access control: personal accounts, login, lockout and passwords
  Only a person with a personal, active account gets in. Every attempt is recorded, repeated failures lock the
  account, and passwords follow the policy.

  Background:
    Given an auditor account "alex.auditor"
    And a system administrator account "admin.one"

  @URS-002
  Scenario: Pages refuse a request without a login session
    When an anonymous visitor asks for the home page, the documents register, the audit log and the user administration
    Then every request is sent to the login page and no page content is shown

  @URS-003 @URS-012 @URS-027
  Scenario: Logins are security events and a failure does not reveal whether the username exists
    When "alex.auditor" logs in with the correct password
    And someone tries to log in as "alex.auditor" with a wrong password
    And someone tries to log in as "nobody.here" with a wrong password
    Then the login of "alex.auditor" lands on the home page greeting him by his printed name
    And both failed attempts show the same message
    And the audit trail holds the successful and the two failed logins, each with the username and a UTC time

  @URS-004 @URS-009 @URS-013
  Scenario: The account locks after the configured number of failures and only an administrator unlocks it
    When someone enters a wrong password for "alex.auditor" as many times as the lockout threshold
    Then the account "alex.auditor" is locked and the lock is recorded as a security event
    And "alex.auditor" cannot log in even with the correct password
    When the administrator unlocks "alex.auditor" without giving a reason
    Then the unlock is refused and "alex.auditor" stays locked
    When the administrator unlocks "alex.auditor" giving the reason "Identity confirmed by phone"
    Then "alex.auditor" can log in again
    And the unlock is recorded in the audit trail with the reason "Identity confirmed by phone"

  @URS-001 @URS-007 @URS-009 @URS-014
  Scenario: A deactivated account cannot log in, keeps its history and its user ID is never reused
    Given "alex.auditor" is logged in
    When the administrator deactivates "alex.auditor" giving the reason "Left the company"
    Then the open session of "alex.auditor" no longer works
    And "alex.auditor" cannot log in even with the correct password
    And the account "alex.auditor" still exists, deactivated, with its audit trail
    When the administrator creates a new account with the user ID "alex.auditor"
    Then the creation is refused because user IDs are never reused

  @URS-010 @URS-007
  Scenario: A temporary password must be changed at first login, following the password policy
    Given "alex.auditor" is logged in
    When the administrator resets the password of "alex.auditor" giving the reason "Forgotten password"
    Then the open session of "alex.auditor" no longer works
    When "alex.auditor" logs in with the temporary password
    Then he is sent to change his password before anything else
    When he chooses the new password "Short-pw-12"
    Then the change is refused with "New password: Password must be at least 12 characters long."
    When he chooses the new password "My-alex.auditor-Passphrase-7"
    Then the change is refused with "New password: Password must not contain your username."
    When he chooses the new password "Granite-Harbour-Lantern-42"
    Then the change is accepted and recorded as a security event
