# frozen_string_literal: true

module Divvy
  class CLI
    # The script the command runs: its path checked, then loaded with
    # {Divvy.load}. Runs in the master.
    module Script
      # Loads `path` and returns its task, saying which class runs under -v.
      #
      # @param path [String] the script, as given on the command line
      # @param report [Report] where errors and the -v line are made
      # @param stderr [#puts] where the -v line goes, or nil
      # @return [Parallelizable] the task
      # @raise [Divvy::Error] naming the script and what is wrong with it,
      #   or the exception it raised while it loaded
      def self.load(path, report, stderr)
        check(path)
        $PROGRAM_NAME = path
        task = Divvy.load(path)
        stderr&.puts("divvy: running #{task.class} from #{path}")
        task
      rescue ScriptError, StandardError => e
        raise if e.is_a?(Divvy::Error)

        raise Divvy::Error, report.script_failure(path, e)
      end

      # Raises Divvy::Error naming what is wrong with the script's path.
      def self.check(path)
        raise Divvy::Error, "#{path}: no such file" unless File.exist?(path)
        raise Divvy::Error, "#{path}: is a directory" if File.directory?(path)
        raise Divvy::Error, "#{path}: not a regular file" unless File.file?(path)
        raise Divvy::Error, "#{path}: not readable" unless File.readable?(path)
      end
      private_class_method :check
    end
    private_constant :Script
  end
end
