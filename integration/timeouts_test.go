package integration

import "time"

// timeoutLong bounds waits for states that normally arrive in well under a second.
const timeoutLong = 60 * time.Second
