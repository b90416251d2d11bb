@oq
Feature: Audit trail: content, reason for change, no deletion, tamper evidence
  Every change records who, when, what (old and new value) and why. Audit data cannot be changed, and changes made
  behind the application's back are detected.

  Background:
    Given a system administrator account "admin.one"
    And an auditor account "alex.auditor"
    And "admin.one" is logged in

  @URS-012 @URS-013 @URS-027 @URS-018
  Scenario: An edit records who, when, the old and new value and the reason, and client-sent times are ignored
    Given the clock reads "2026-03-02 09:30:00" UTC
    When "admin.one" changes the printed name of "alex.auditor" to "Alexander Auditor" giving the reason "Name corrected after marriage", the request also claiming a time of "2001-01-01T00:00:00" and another user
    Then the change is saved
    And the account's audit trail shows "Full printed name" changed from "Alex Auditor" to "Alexander Auditor"
    And the audit entry names "admin.one" with printed name "Admin One", the server time "2026-03-02 09:30:00" UTC and the reason "Name corrected after marriage"

  @URS-013 @URS-028
  Scenario: An edit without a reason for change is refused and nothing is written
    When "admin.one" changes the printed name of "alex.auditor" to "Sneaky Name" without a reason
    Then the edit is refused naming the reason for change
    And "alex.auditor" keeps the printed name "Alex Auditor" and no audit transaction was added

  @URS-014
  Scenario: GxP records cannot be deleted
    When the application is asked to delete the account "alex.auditor"
    Then the deletion is refused because GxP records are retired, never deleted
    And no page or route of the application accepts DELETE, PUT or PATCH

  @URS-016
  Scenario: A record changed directly in the database is detected and named
    Given the audit trail integrity check passes
    When the printed name of "alex.auditor" is changed directly in the database, bypassing the application
    Then the integrity check fails naming the user record of "alex.auditor" and the field "full_name"

  @URS-016 @URS-015
  Scenario: An audit row changed with database superuser rights breaks the hash chain
    Given the audit trail integrity check passes
    When a database superuser changes the printed name in the oldest version row of "alex.auditor"
    Then the integrity check fails naming the transaction whose content no longer matches its hash

  @URS-015
  Scenario: The application's database account cannot change or delete audit data
    When the application's database account tries to update and delete audit transactions, audit events and version rows
    Then the database refuses every statement as append-only
    And the audit trail integrity check passes

  @URS-018
  Scenario: An auditor filters the audit log and exports it, and the export is recorded
    Given "alex.auditor" is logged in
    When "alex.auditor" filters the audit log by the user "admin.one"
    And "alex.auditor" exports the filtered audit log as CSV
    Then the export lists exactly the transactions the filtered log shows, with time, user, reason, field, old and new value
    And the export is recorded as an audit event with its filter under "alex.auditor"
