@iq
Feature: Installation qualification
  Before any operational test, the installed software, its database and its configuration are shown to be those of
  the released version, configured for GxP use.

  @URS-049
  Scenario: The installed packages satisfy every declared dependency
    Given the released dependency declaration of Attest
    When the installed version of each declared package is read
    Then every declared package is installed in a version within its declared range
    And the installed distribution declares the same requirements as the release

  @URS-050 @URS-015
  Scenario: The database is migrated to the released schema with its audit guards
    Given the installed application and its database
    When the migration history is compared with the database's migration stamp
    Then the migration history has a single head and the database is at that head
    And every version table and the audit event table carry their append-only guards

  @URS-051 @URS-024
  Scenario: The shipped XML schemas are present and valid
    Given the XML schemas shipped with the software
    When each schema is loaded as an XSD with external access refused
    Then each schema is a valid XSD document and its SHA-256 is recorded
    And the signature manifest schema lists exactly the signature meanings of the software

  @URS-053 @URS-005 @URS-027 @URS-019
  Scenario: The production configuration is safe
    Given the installed application's configuration
    Then the session cookie is secure, HTTP-only and same-site
    And the secret key is at least 32 characters long and is not a key published in the source code
    And TOTP is required for every signer
    And the default time zone is UTC and the server clock runs in UTC
    And no setting can switch the audit trail or versioning off
    And an invalid setting stops the application from starting, naming the variable

  @URS-016
  Scenario: The audit trail of the installation verifies
    Given the installed application and its database
    When the audit trail integrity check runs
    Then the hash chain is intact and every record matches its last audited version
