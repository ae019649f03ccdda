package rails

import "testing"

// TestRegexpsCompile compiles every expression of the package: compiled
// lazily, a bad one would otherwise fail only when a run first needs it.
func TestRegexpsCompile(t *testing.T) {
	all := map[string]any{
		"doneLine": doneLine(), "startLine": startLine(), "gapLine": gapLine(), "backtraceLine": backtraceLine(),
		"migrationFilenameRegexp": migrationFilenameRegexp(),
		"pgLockTimeout":           pgLockTimeout(), "myLockTimeout": myLockTimeout(), "arLockTimeout": arLockTimeout(),
		"pgClient": pgClient(), "myClient": myClient(), "wrapperLine": wrapperLine(), "errorLine": errorLine(),
		"sayLine": sayLine(), "callLine": callLine(), "timeLine": timeLine(), "commentOption": commentOption(),
		"disableDDLTransaction": disableDDLTransaction(), "migrationClass": migrationClass(),
		"gemPathOption": gemPathOption(), "gemPathBlock": gemPathBlock(),
		"ymlKeyLine": ymlKeyLine(), "ymlAnchor": ymlAnchor(), "ymlAlias": ymlAlias(), "erbTag": erbTag(),
	}
	for name, re := range all {
		if re == nil {
			t.Errorf("%s: nil", name)
		}
	}
}
