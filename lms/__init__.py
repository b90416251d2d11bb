"""Learning management: courses, content items, quizzes, SCORM/xAPI (built in later issues)."""
