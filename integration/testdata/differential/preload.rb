# The differential test's Rails preloader: it loads the bundle, Rails,
# Active Record, Rake and both database adapters once, then for each request
# forks a child that runs an app's bin/rails as a fresh process would, in
# the app's directory, with the request's environment and arguments. Like
# Spring, but nothing of an app is ever preloaded: only library code, the
# very versions each app it serves bundles, and not ActiveRecord::Base,
# which the app's configuration acts on as it loads.
#
# Protocol, one JSON object a line. In: {"id", "dir", "env", "argv",
# "stdout", "stderr"}. Out: {"ready": true} once; {"id", "pid"} when a child
# started; {"id", "status", "cpu"} when it ended (status 128+N if it died of
# signal N; cpu its CPU seconds).
require "json"
require "bundler/setup"
require "rails"
require "active_record/railtie"
require "rake"
require "active_record/connection_adapters/postgresql_adapter"
require "active_record/connection_adapters/mysql2_adapter"
abort "preload.rb: ActiveRecord::Base got loaded" unless ActiveRecord.autoload?(:Base)

$stdout.sync = true
replies = Mutex.new
reply = ->(message) { replies.synchronize { $stdout.puts(JSON.generate(message)) } }

reply.call("ready" => true)
$stdin.each_line do |line|
  request = JSON.parse(line)
  cpu_file = "#{request["stderr"]}.cpu"
  pid = fork do
    at_exit { File.write(cpu_file, Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID).to_s) }
    $stdin.reopen(File::NULL)
    $stdout.reopen(request["stdout"], "w")
    $stderr.reopen(request["stderr"], "w")
    Dir.chdir(request["dir"])
    ENV.replace(request["env"])
    program, *args = request["argv"]
    ARGV.replace(args)
    $0 = program
    load File.expand_path(program)
  end
  reply.call("id" => request["id"], "pid" => pid)
  Thread.new do
    _, status = Process.wait2(pid)
    cpu = File.exist?(cpu_file) ? File.read(cpu_file).to_f : 0.0
    reply.call("id" => request["id"], "status" => status.exitstatus || 128 + status.termsig, "cpu" => cpu)
  end
end
