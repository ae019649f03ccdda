package rails

import "testing"

// TestRegexpsCompile compiles every expression of the package: compiled
// lazily, a bad one would otherwise fail only when a run first needs it.
func TestRegexpsCompile(t *testing.T) {
	all := map[string]any{
		"doneLine": doneLine.re(), "startLine": startLine.re(), "gapLine": gapLine.re(), "backtraceLine": backtraceLine.re(),
		"migrationFilenameRegexp": migrationFilenameRegexp.re(),
		"pgLockTimeout":           pgLockTimeout.re(), "myLockTimeout": myLockTimeout.re(), "arLockTimeout": arLockTimeout.re(),
		"pgClient": pgClient.re(), "myClient": myClient.re(), "wrapperLine": wrapperLine.re(), "errorLine": errorLine.re(),
		"sayLine": sayLine.re(), "callLine": callLine.re(), "timeLine": timeLine.re(), "commentOption": commentOption.re(),
		"disableDDLTransaction": disableDDLTransaction.re(), "migrationClass": migrationClass.re(),
		"gemPathOption": gemPathOption.re(), "gemPathBlock": gemPathBlock.re(),
		"ymlKeyLine": ymlKeyLine.re(), "ymlAnchor": ymlAnchor.re(), "ymlAlias": ymlAlias.re(), "erbTag": erbTag.re(),
	}
	for name, re := range all {
		if re == nil {
			t.Errorf("%s: nil", name)
		}
	}
}
