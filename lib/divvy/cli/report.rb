# frozen_string_literal: true

module Divvy
  class CLI
    # What the command prints on stderr when something stops it: one line
    # for each error, its backtrace only under -v. Runs in the master.
    class Report
      # Backtrace frames in divvy's own Ruby files and launcher.
      OWN_FRAMES = /\A#{Regexp.union(File.expand_path('../..', __dir__),
                                     File.expand_path('../../../exe/divvy', __dir__))}\b/

      # @param stderr [#puts] where the lines go
      # @param verbose [Boolean] true under -v: backtraces are printed
      def initialize(stderr, verbose:)
        @stderr = stderr
        @verbose = verbose
      end

      # Prints `divvy: message`.
      #
      # @param status [Integer] the exit status to return
      # @param message [String] what went wrong
      # @return [Integer] `status`
      def failure(status, message)
        @stderr.puts("divvy: #{message}")
        status
      end

      # Prints how a signal stopped the run, in one line; nothing for a
      # closed standard output (SIGPIPE), as `head` expects of the commands
      # it reads.
      #
      # @param error [Divvy::Master::Shutdown] what stopped it
      # @return [Integer] the exit status: 128 + the signal's number
      def stopped(error)
        signo = error.signo || 15
        return 128 + signo if signo == Signal.list.fetch('PIPE')

        failure(128 + signo, error.message)
      end

      # Prints that the task's hook `hook` raised `error`; then, unless the
      # run printed its own summary (under -v and after a failure), what
      # `master` did.
      #
      # @return [Integer] 1, the exit status
      def hook_failed(hook, error, master)
        failure(1, "#{hook} raised #{error.class}: #{first_line(error)}#{backtrace(error)}")
        return 1 if @verbose || master.failures.positive?

        failure(1, "#{master.items_performed} performed, #{master.items_failed} failed, " \
                   "#{master.items_retried} retried before it stopped")
      end

      # @return [String] the message for a script that raised `error` while
      #   it loaded
      def script_failure(script, error)
        "#{script}: #{error.class}: #{first_line(error)}#{backtrace(error)}"
      end

      private

      def first_line(error)
        error.message.lines.first.to_s.chomp
      end

      # The frames of `error`'s backtrace outside divvy's own files, each
      # on a line of its own as "\tfrom FRAME"; empty unless -v.
      def backtrace(error)
        return '' unless @verbose

        Array(error.backtrace).grep_v(OWN_FRAMES).map { |frame| "\n\tfrom #{frame}" }.join
      end
    end
    private_constant :Report
  end
end
