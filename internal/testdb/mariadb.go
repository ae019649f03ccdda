package testdb

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/go-sql-driver/mysql"
)

func (s *Server) initMariaDB(ctx context.Context, pickPort func() (int, error)) error {
	// Its own tmpdir, as for the server below: the temporary tables of a
	// bootstrap in a shared /tmp have been seen to vanish under it.
	args := []string{"--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db",
		"--datadir=" + s.dataDir(), "--tmpdir=" + s.dir}
	if s.runAs != nil {
		args = append(args, "--user=mysql")
	}
	if err := s.run(ctx, "mariadb-install-db", args...); err != nil {
		return err
	}
	if err := s.startNew(ctx, pickPort); err != nil {
		return err
	}
	s.admin = (&mysql.Config{User: "root", Net: "unix", Addr: s.socket(), AllowNativePasswords: true}).FormatDSN()
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", AppUser, s.password),
		fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%'", AppUser),
		"CREATE DATABASE " + AppUser,
	} {
		if err := s.exec(ctx, "", q); err != nil {
			return fmt.Errorf("set up the app user: %w", err)
		}
	}
	return nil
}

func (s *Server) socket() string { return filepath.Join(s.dir, "my.sock") }

func mariadbdBin() string {
	const bin = "/usr/sbin/mariadbd" // not in a normal user's PATH
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	return "mariadbd"
}

func (s *Server) startMariaDB(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	logFile := filepath.Join(s.dir, "mariadb.log")
	args := []string{"--no-defaults", "--datadir=" + s.dataDir(), "--socket=" + s.socket(),
		"--port=" + strconv.Itoa(s.port), "--bind-address=" + s.listenAddresses(), "--skip-networking=0",
		"--pid-file=" + filepath.Join(s.dir, "my.pid"), "--log-error=" + logFile,
		"--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=32M",
		"--max-connections=400", "--skip-name-resolve", "--tmpdir=" + s.dir}
	if s.runAs != nil {
		args = append(args, "--user=mysql")
	}
	// Not CommandContext: the server outlives the start's deadline.
	cmd := exec.Command(mariadbdBin(), args...)
	exited, err := startDaemon(ctx, cmd, logFile, func() bool {
		conn, err := net.Dial("unix", s.socket())
		if err != nil {
			return false
		}
		conn.Close()
		// Wait for it to answer as well as accept.
		return s.admin == "" || s.exec(ctx, "", "SELECT 1") == nil
	})
	if err != nil {
		return err
	}
	s.running, s.mariadbd, s.exited = true, cmd.Process, exited
	return nil
}
