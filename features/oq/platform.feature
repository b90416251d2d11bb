@oq
Feature: Platform hardening
  Pages protect the browser session and load nothing from outside the server.

  @URS-054
  Scenario: Every page carries the security headers and uses only the server's own assets
    Given an auditor account "alex.auditor"
    And "alex.auditor" is logged in
    When "alex.auditor" opens the home page and the login page
    Then both pages are sent with a content security policy allowing only this server, frame denial, no content sniffing, a same-origin referrer policy and no caching
    And no page references a script, style sheet or font on another server
