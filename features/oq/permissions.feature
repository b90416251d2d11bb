@oq
Feature: Permissions and segregation of duties
  The role and permission matrix is enforced by the server: a denied request changes nothing and is recorded.

  @URS-008
  Scenario Outline: A role without the permission is refused on the server and the refusal is recorded
    Given a <role> account "<username>"
    And "<username>" is logged in
    When "<username>" requests "<method> <page>"
    Then the request is refused with 403 naming the permission "<permission>"
    And the refusal is recorded as a security event for "<username>"

    Examples:
      | role                 | username      | method | page                        | permission       |
      | operator             | otto.operator | GET    | /admin/users/               | users.view       |
      | operator             | otto.operator | GET    | /documents/new              | documents.author |
      | auditor              | alex.auditor  | GET    | /capa/new                   | quality.manage   |
      | system administrator | admin.one     | GET    | /documents/new              | documents.author |
      | document author      | ada.author    | GET    | /audit/                     | audit.view       |
      | supervisor           | sam.super     | GET    | /training/matrix            | training.manage  |

  @URS-008 @URS-011
  Scenario: An operator forcing an administrator action changes nothing
    Given an operator account "otto.operator"
    And an auditor account "alex.auditor"
    And "otto.operator" is logged in
    When "otto.operator" posts a deactivation of "alex.auditor" with his own anti-forgery token
    Then the request is refused with 403 naming the permission "users.manage"
    And "alex.auditor" is still active and no deactivation is recorded

  @URS-009
  Scenario: The administrator role cannot be combined with a signing role and nobody changes their own roles
    Given a system administrator account "admin.one"
    And an operator account "otto.operator"
    And "admin.one" is logged in
    When "admin.one" gives "otto.operator" the roles "system_admin" and "operator" with the reason "Cover"
    Then the change is refused naming segregation of duties and "otto.operator" keeps his roles
    When "admin.one" gives himself the roles "system_admin" and "auditor" with the reason "Need to audit"
    Then the change is refused naming segregation of duties and "admin.one" keeps his roles
