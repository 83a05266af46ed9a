# frozen_string_literal: true

require 'digest/sha1'

RSpec.describe 'the divvy command' do
  let(:example_script) { File.join(ROOT, 'examples', 'danceparty.rb') }

  # Parses the dance party's ticket lines into [pid, ticket, sha1] rows.
  def tickets(stdout)
    stdout.lines.grep(/\A\s*\d+\s+\d+\s+\h{40}\s*\z/).map do |line|
      pid, ticket, sha1 = line.split
      [pid.to_i, ticket.to_i, sha1]
    end
  end

  describe 'running the dance party' do
    it 'prints the header and ten ticket codes spread over the workers' do
      result = divvy('-n', 5, example_script)
      expect(result.status).to be_success, result.stderr
      expect(result.stdout.lines.first).to eq("Generating 10 ticket codes for the show...\n")
      rows = tickets(result.stdout)
      expect(rows.map { |row| row[1] }).to match_array((0...10).to_a)
      rows.each { |_pid, ticket, sha1| expect(sha1).to eq(Digest::SHA1.hexdigest(ticket.to_s)) }
      expect(rows.map(&:first).uniq.size).to be > 1
      expect(rows.map(&:first)).not_to include(result.status.pid)
    end

    it 'prints exactly eleven lines into a pipe: nothing the master buffered is printed twice' do
      result = divvy('-n', 2, example_script)
      expect(result.stdout.lines.size).to eq(11)
      expect(result.stdout.scan('Generating').size).to eq(1)
    end

    it 'passes the arguments after the script to it as ARGV' do
      result = divvy('-n', 3, example_script, 25)
      expect(result.stdout.lines.first).to eq("Generating 25 ticket codes for the show...\n")
      expect(tickets(result.stdout).map { |row| row[1] }).to match_array((0...25).to_a)
    end

    it 'starts one worker per processor without -n' do
      result = divvy('-v', example_script)
      expect(result.status).to be_success
      expect(result.stderr.scan(/worker \d+ \(pid \d+\) started/).size).to eq(Etc.nprocessors)
    end

    it 'runs from a directory other than the checkout' do
      Dir.mktmpdir do |dir|
        result = divvy('-n', 2, example_script, 3, chdir: dir)
        expect(result.status).to be_success
        expect(tickets(result.stdout).size).to eq(3)
      end
    end
  end

  describe 'reporting' do
    it 'logs worker starts and exits with -v' do
      result = divvy('-v', '-n', 2, example_script, 2)
      expect(result.stderr).to match(/divvy: worker 1 \(pid \d+\) started/)
      expect(result.stderr).to match(/divvy: worker 2 \(pid \d+\) started/)
      expect(result.stderr).to match(/divvy: worker 1 \(pid \d+\) exited with status 0/)
    end

    it 'says which task class runs with -v' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'dance_party.rb', <<~RUBY)
          class DanceParty
            include Divvy::Parallelizable
            def dispatch = yield(1)
            def perform(_) = puts('party')
          end
          class DanceHelper; include Divvy::Parallelizable; end
        RUBY
        result = divvy('-v', '-n', 1, script)
        expect(result.status).to be_success, result.stderr
        expect(result.stderr.lines.first).to eq("divvy: running DanceParty from #{script}\n")
        expect(divvy('-n', 1, script).stderr).to be_empty
      end
    end

    it 'exits 1 and names the worker, item and exception when an item raises' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'raises.rb', <<~RUBY)
          class Raises
            include Divvy::Parallelizable
            def dispatch; 5.times { |i| yield i, "item-\#{i}" }; end
            def perform(number, label)
              raise ArgumentError, "no good: \#{label}" if number == 3
              puts label
            end
          end
        RUBY
        result = divvy('-n', 2, script)
        expect(result.exitstatus).to eq(1)
        expect(result.stdout.lines.map(&:chomp)).to match_array(%w[item-0 item-1 item-2 item-4])
        lines = result.stderr.lines.grep(/failed performing/)
        expect(lines.size).to eq(1)
        expect(lines.first).to match(/\Adivvy: worker [12] \(pid \d+\) failed performing \[3, "item-3"\]: ArgumentError: no good: item-3\n\z/)
        expect(result.stderr).not_to include('raises.rb:')
      end
    end

    it 'prints the backtrace with -v or DIVVY_VERBOSE_TRACE=1' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'raises.rb', <<~RUBY)
          class Raises
            include Divvy::Parallelizable
            def dispatch; yield 1; end
            def perform(_); raise 'boom'; end
          end
        RUBY
        expect(divvy('-v', '-n', 1, script).stderr).to match(/\tfrom .*raises\.rb:\d+:in `perform'/)
        traced = divvy('-n', 1, script, env: { 'DIVVY_VERBOSE_TRACE' => '1' })
        expect(traced.stderr).to match(/\tfrom .*raises\.rb:\d+:in `perform'/)
        expect(traced.stderr).not_to include('cli.rb')
      end
    end
  end

  describe 'a hook that raises' do
    # A task whose hook named by HOOK raises KeyError: "HOOK broke".
    let(:hooky) do
      <<~RUBY
        class Hooky
          include Divvy::Parallelizable
          def broke(hook) = (raise KeyError, "\#{hook} broke" if ENV['HOOK'] == hook)
          def dispatch
            6.times { |i| yield i }
            broke('dispatch')
          end
          def perform(i) = (raise 'no good' if i == 5)
          def completed(_result, _i) = broke('completed')
          def failed(_error, _i) = broke('failed')
          def before_fork(_worker) = broke('before_fork')
        end
      RUBY
    end

    %w[dispatch completed failed before_fork].each do |hook|
      it "names #{hook} and its exception in one line, then says what was done, and exits 1" do
        Dir.mktmpdir do |dir|
          script = write_script(dir, 'hooky.rb', hooky)
          result = divvy('-n', 2, script, env: { 'HOOK' => hook })
          expect(result.exitstatus).to eq(1)
          expect(result.stderr).to match(/^divvy: #{hook} raised KeyError: #{hook} broke$/)
          expect(result.stderr).not_to match(/\.rb:\d+:in /) # no Ruby backtrace
          expect(result.stderr.scan(/^divvy: \d+ performed, \d+ failed, \d+ retried/).size).to eq(1)

          verbose = divvy('-v', '-n', 2, script, env: { 'HOOK' => hook })
          expect(verbose.exitstatus).to eq(1)
          expect(verbose.stderr).to match(/^divvy: #{hook} raised KeyError: #{hook} broke\n\tfrom .*hooky\.rb:\d+:in `broke'$/)
          expect(verbose.stderr).not_to include('cli.rb')
          expect(verbose.stderr.scan(/^divvy: \d+ performed, \d+ failed, \d+ retried/).size).to eq(1)
        end
      end
    end

    it 'leaves an item that cannot be marshalled to the error it always had' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'procs.rb', <<~RUBY)
          class Procs
            include Divvy::Parallelizable
            def dispatch = yield(proc {})
            def perform(_) = nil
          end
        RUBY
        result = divvy('-n', 1, script)
        expect(result.exitstatus).to eq(1)
        expect(result.stderr.lines.first).to match(/\Adivvy: cannot dispatch item \[#<Proc:.*\]: argument 1 \(a Proc\)/)
      end
    end
  end

  describe 'how an item ended' do
    it 'reports exit 3 inside perform with its status' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'exits.rb', <<~RUBY)
          class Exits
            include Divvy::Parallelizable
            def dispatch = 4.times { |i| yield i }
            def perform(i)
              exit 3 if i == 2
              puts "done \#{i}"
            end
          end
        RUBY
        result = divvy('-n', 2, script)
        expect(result.exitstatus).to eq(1)
        expect(result.stdout.lines).to contain_exactly("done 0\n", "done 1\n", "done 3\n")
        expect(result.stderr).to match(/^divvy: worker [12] \(pid \d+\) exited with status 3 while performing \[2\]$/)
        expect(result.stderr).not_to include('SystemExit')
      end
    end

    it 'gives Divvy.map the status in TaskError#exit_status' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        begin
          Divvy.map([1, 2, 3], workers: 1) { |i| i == 2 ? exit(3) : i }
        rescue Divvy::TaskError => e
          p [e.reason, e.exit_status, e.args]
        end
      RUBY
      expect(result.stdout).to eq("[:died, 3, [2]]\n"), result.stderr
    end
  end

  # File names are bytes: one that is not valid UTF-8 made OptionParser
  # raise its ArgumentError, with a backtrace, before divvy saw it.
  it 'takes arguments whose bytes are not valid in the locale, as bytes' do
    Dir.mktmpdir do |dir|
      script = write_script(dir, 'args.rb', <<~RUBY)
        class Args
          include Divvy::Parallelizable
          def dispatch = yield(ARGV.first.bytes)
          def perform(bytes) = p(bytes)
        end
      RUBY
      log = File.join(dir, "run-\xFE.log".b)
      result = divvy('-n', 1, '--joblog', log, script, "a\xFF".b, env: { 'LANG' => 'C.UTF-8' })
      expect(result.status).to be_success, result.stderr
      expect(result.stdout).to eq("[97, 255]\n")
      expect(File.exist?(log)).to be(true)
      missing = divvy('-n', 1, File.join(dir, "no-\xFE.rb".b), env: { 'LANG' => 'C.UTF-8' })
      expect(missing.exitstatus).to eq(1)
      expect(missing.stderr.b).to end_with("no-\xFE.rb: no such file\n".b)
    end
  end

  describe 'help and version' do
    it 'prints usage with -h' do
      result = divvy('-h')
      expect(result.status).to be_success
      expect(result.stdout).to include('Usage: divvy [-n WORKERS] [OPTIONS] SCRIPT [ARGS...]')
      expect(result.stdout).to include('--workers WORKERS')
    end

    it 'prints the same help the README shows' do
      help = divvy('--help').stdout
      readme = File.read(File.join(ROOT, 'README.md'))
      expect(readme).to include("```\n#{help}```\n")
    end

    it 'prints the version with --version' do
      result = divvy('--version')
      expect(result.stdout).to eq("divvy #{File.read(File.join(ROOT, 'lib/divvy/version.rb'))[/'(.+)'/, 1]}\n")
    end
  end

  describe 'bad command lines' do
    def expect_one_line_error(result, status, pattern)
      expect(result.exitstatus).to eq(status)
      expect(result.stderr.lines.first).to match(pattern)
      expect(result.stderr).not_to match(/\.rb:\d+:in /) # no Ruby backtrace
      expect(result.stderr).not_to include('panicked')
    end

    it 'rejects -n 0' do
      expect_one_line_error(divvy('-n', 0, example_script), 2,
                            /\Adivvy: invalid value: worker count must be a positive Integer, got 0$/)
    end

    it 'rejects -n -2' do
      expect_one_line_error(divvy('-n', -2, example_script), 2,
                            /\Adivvy: invalid value: worker count must be a positive Integer, got -2$/)
    end

    it 'rejects -n abc' do
      expect_one_line_error(divvy('-n', 'abc', example_script), 2, /\Adivvy: invalid argument: -n abc/)
    end

    it 'rejects an unknown option' do
      expect_one_line_error(divvy('--frobnicate', example_script), 2, /\Adivvy: invalid option: --frobnicate/)
    end

    it 'rejects a missing script argument' do
      expect_one_line_error(divvy('-n', 2), 2, /\Adivvy: no script given/)
    end

    it 'rejects a script that does not exist' do
      expect_one_line_error(divvy('-n', 2, 'no/such/script.rb'), 1, %r{\Adivvy: no/such/script.rb: no such file})
    end

    it 'rejects a script that is a directory, saying so' do
      Dir.mktmpdir do |dir|
        expect_one_line_error(divvy('-n', 2, dir), 1, /\Adivvy: #{Regexp.escape(dir)}: is a directory\n\z/)
      end
    end

    it 'rejects a script it cannot read' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'secret.rb', '')
        File.chmod(0o000, script)
        result = run_command(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
                              'ruby', File.join(ROOT, 'exe', 'divvy'), script])
        File.chmod(0o644, script)
        if Process.uid.zero?
          expect_one_line_error(result, 1, /\Adivvy: .*secret.rb: (not readable|no such file)/)
        else
          expect(result.exitstatus).to eq(1)
        end
      end
    end

    it 'rejects a script that defines no Parallelizable class' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'empty.rb', "class NotATask; end\n")
        expect_one_line_error(divvy(script), 1,
                              /\Adivvy: .*empty.rb defines no class that includes Divvy::Parallelizable/)
      end
    end

    it 'reports a script that fails to load in one line' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'broken.rb', "def oops(\n")
        expect_one_line_error(divvy(script), 1, /\Adivvy: .*broken.rb: SyntaxError: /)
        expect(divvy(script).stderr.lines.size).to eq(1)
      end
    end
  end
end
