# frozen_string_literal: true

module Divvy
  class CLI
    # The command's job log options: --joblog, --resume and --resume-failed
    # (`joblog:` and `resume:` of Divvy::Master.new). Runs in the master.
    module JobLogOptions
      # Defines the options on `opts`, each setting its keyword in `options`.
      #
      # @param opts [OptionParser] the command's parser
      # @param options [Hash] the keywords for Divvy::Master.new
      # @return [void]
      def self.define(opts, options)
        opts.on('--joblog FILE', 'record each item in FILE when it settles (under --shard: run.I-of-N.log)') do |file|
          options[:joblog] = file
        end
        opts.on('--resume', 'skip the items the job log recorded as performed or failed') { options[:resume] = true }
        opts.on('--resume-failed', 'as --resume, but perform again those it recorded as failed') do
          options[:resume] = :failed
        end
      end

      # Checks the options once the command line is read.
      #
      # @param options [Hash] the keywords for Divvy::Master.new
      # @return [void]
      # @raise [UsageError] for --resume or --resume-failed without --joblog
      def self.check(options)
        return if options[:joblog] || !options[:resume]

        raise UsageError, "--#{options[:resume] == :failed ? 'resume-failed' : 'resume'} needs --joblog FILE"
      end
    end
    private_constant :JobLogOptions
  end
end
